//! Integration tests of sculpt-passes.

mod pipeline;
mod zero_groups;
