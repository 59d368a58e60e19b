"""What a panel leaves behind for readers without a kernel: the summary and its posters."""
