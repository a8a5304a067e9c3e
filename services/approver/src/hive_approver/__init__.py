"""hyperhive approver: approvals, operator questions and the audit log in PostgreSQL; the only writer of decisions."""

__version__ = "0.1.0"
