//! crac-shim: CRaC-style checkpoint and restore of a stock JVM with CRIU.
//!
//! The binaries are thin: `crac-java` is [`launcher::main`], `crac-jcmd` is [`jcmd::main`].

pub mod claims;
pub mod cli;
pub mod criu;
pub mod doc;
pub mod dump;
pub mod engine;
pub mod guard;
pub mod image;
pub mod java;
pub mod jcmd;
pub mod kdat;
pub mod launcher;
pub mod paths;
pub mod privilege;
pub mod restore;
pub mod supervise;
pub mod terminal;
pub mod timing;
