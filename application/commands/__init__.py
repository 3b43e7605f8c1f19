"""The command handlers of SimLedger, one module per family: each loads what it needs
through the unit of work, lets the domain decide, and saves what changed."""
