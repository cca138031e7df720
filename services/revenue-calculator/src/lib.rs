//! revenue-calculator's configuration, a library so that what the binary reads can be checked
//! from outside (the operator's pod-environment contract test).

pub mod config;
