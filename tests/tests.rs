//! End-to-end tests: the `ibex` binary and the library against outputs lm-eval 0.4.13 itself produced on the same
//! tiny model and hand-written data (tests/fixtures/make_fixtures.py regenerates both).

mod batching;
mod chat;
mod common;
mod compare;
mod devices;
mod errors;
mod fetch;
mod files;
mod generation;
mod parity;
mod plugins;
mod recipes;
mod resume;
mod shards;
mod transforms;
mod yaml;
