//! End-to-end harness: starts the real `gatewayd` binary and in-process origin servers on
//! loopback (ephemeral ports), and drives them as clients do. Every process started is killed by
//! PID when its handle drops.

pub mod harness;
