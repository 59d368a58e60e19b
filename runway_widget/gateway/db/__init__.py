"""The gateway's state in one database: tables, the quota ledger, the roster, followers."""
