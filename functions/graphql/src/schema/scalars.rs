//! Scalars and enums: `DateTime` (RFC 3339, UTC on output) and `order_by`.

use juniper::{GraphQLEnum, GraphQLScalar};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// RFC 3339 in UTC with a `+00:00` offset; any offset accepted on input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLScalar)]
#[graphql(
    name = "DateTime",
    to_output_with = Self::render,
    from_input_with = Self::from_input,
    parse_token(String)
)]
pub struct DateTime(pub OffsetDateTime);

impl DateTime {
    fn render(&self) -> String {
        let utc = self.0.checked_to_offset(UtcOffset::UTC).unwrap_or(self.0);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )
    }

    /// Parses RFC 3339 and normalises to UTC. The conversion is checked: an
    /// offset can carry a valid local time past the last representable UTC
    /// instant (e.g. `9999-12-31T23:59:59-00:01`).
    pub fn from_input(input: &str) -> Result<Self, Box<str>> {
        let shown: String = input.chars().take(64).collect();
        let parsed = OffsetDateTime::parse(input, &Rfc3339).map_err(|_| {
            format!("Invalid DateTime {shown:?}: expected RFC 3339, e.g. 2031-01-02T03:04:05+00:00")
        })?;
        parsed
            .checked_to_offset(UtcOffset::UTC)
            .map(DateTime)
            .ok_or_else(|| format!("Invalid DateTime {shown:?}: out of range in UTC").into())
    }
}

#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "order_by")]
pub enum OrderBy {
    #[graphql(name = "asc")]
    Asc,
    #[graphql(name = "desc")]
    Desc,
}
