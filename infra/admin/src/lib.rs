//! Operator tooling: local tables made from template.yaml's definitions.

pub mod tables;
