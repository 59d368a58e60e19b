"""The gateway's browser side: sign-in, the live gallery, the admin report and its pages."""
