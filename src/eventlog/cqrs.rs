//! cqrs-es persistence over any EventLog.
