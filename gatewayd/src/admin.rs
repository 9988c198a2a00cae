//! The admin API: authenticated JSON over HTTP/1.1 on the control runtime (off the request
//! path). Routes are in `handlers`; `auth` checks the bearer token in constant time.

mod auth;
mod handlers;
pub mod model;
mod server;
mod views;

pub use server::serve;
