//! One module per route family; the router is `crate::handler::handle`.

pub mod graphql;
pub mod scanning;
