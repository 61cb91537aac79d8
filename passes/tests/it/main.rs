//! Integration tests of sculpt-passes.

mod cases;
mod pipeline;
mod zero_groups;
