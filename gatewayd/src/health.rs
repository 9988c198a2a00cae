//! Passive health: outlier ejection from the results of real requests.

mod outlier;

pub use outlier::{record_outcome, Ejected, Outcome, NOTES};
