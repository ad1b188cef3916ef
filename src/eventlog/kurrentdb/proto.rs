//! gRPC types generated from KurrentDB's `.proto` files (see `tests/kurrentdb_codegen.rs`,
//! which regenerates `generated/` and fails when it is stale).
//!
//! - `event_store::client::streams`: the v1 streams protocol as the `kurrentdb` crate ships
//!   it. The adapter talks v1 through the official client; only the protocol test double
//!   uses these types (server side).
//! - `kurrentdb::protocol::v2`: the multi-stream append of KurrentDB 25.1, which the official
//!   Rust client does not expose: the adapter's own client and the test double's server.
//!
//! Modules mirror the protobuf packages because generated code refers to other packages by
//! relative `super::` paths.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

pub mod event_store {
    pub mod client {
        include!("generated/event_store.client.rs");
        pub mod streams {
            include!("generated/event_store.client.streams.rs");
        }
    }
}

pub mod google {
    pub mod rpc {
        include!("generated/google.rpc.rs");
    }
}

pub mod kurrentdb {
    pub mod protocol {
        pub mod v2 {
            include!("generated/kurrentdb.protocol.v2.rs");
        }
    }
}
