//! Times in requests, as people write them: Unix seconds (`1735689600`) or
//! RFC 3339 (`2025-01-01T00:00:00Z`, any offset, fractions of a second
//! dropped). [`TimeParam`] is the parameter type of `from` and `to`; its
//! schema in the OpenAPI document is `oneOf` an integer (0 to
//! [`MAX_TIME_SECS`]) and a `date-time` string.
//!
//! What must never happen: a time the document allows refused (an RFC 3339
//! time before 1970 or after 2200 is clamped to those bounds, as the
//! document cannot bound a date-time), or a Unix time outside the
//! integer's bounds accepted (a milliseconds value is a unit mistake).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};

use crate::model::MAX_TIME_SECS;

/// A time given as Unix seconds or RFC 3339, as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeParam(pub i64);

/// Reads a time: Unix seconds in `0..=MAX_TIME_SECS`, or an RFC 3339
/// date-time (clamped to that range).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(t) if t <= MAX_TIME_SECS => Ok(t),
            _ => Err(format!(
                "`{}` is not Unix seconds between 0 and {MAX_TIME_SECS} (milliseconds?)",
                candela_actors::domain::validate::shorten(text)
            )),
        };
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(t.timestamp().clamp(0, MAX_TIME_SECS)),
        Err(e) => Err(format!(
            "`{}` is neither Unix seconds nor an RFC 3339 time like 2025-01-01T00:00:00Z ({e})",
            candela_actors::domain::validate::shorten(text)
        )),
    }
}

impl Type for TimeParam {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "Time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let seconds = MetaSchema {
            minimum: Some(0.0),
            maximum: Some(MAX_TIME_SECS as f64),
            description: Some("Unix seconds"),
            ..MetaSchema::new_with_format("integer", "int64")
        };
        let rfc3339 = MetaSchema {
            description: Some(
                "An RFC 3339 time, e.g. 2025-01-01T00:00:00Z (before 1970: 1970; after 2200: 2200)",
            ),
            ..MetaSchema::new_with_format("string", "date-time")
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            one_of: vec![
                MetaSchemaRef::Inline(Box::new(seconds)),
                MetaSchemaRef::Inline(Box::new(rfc3339)),
            ],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for TimeParam {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        parse_time(value).map(TimeParam).map_err(ParseError::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_seconds_or_rfc3339() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1735689600"), Ok(1_735_689_600));
        assert_eq!(parse_time("2025-01-01T00:00:00Z"), Ok(1_735_689_600));
        assert_eq!(parse_time("2025-01-01T01:00:00+01:00"), Ok(1_735_689_600));
        assert_eq!(parse_time("2025-01-01t00:00:00.999z"), Ok(1_735_689_600));
        // Outside the integer's bounds, refused; a date-time, clamped.
        assert!(parse_time("1735689600000")
            .unwrap_err()
            .contains("milliseconds"));
        assert!(parse_time("-5").is_err());
        assert_eq!(parse_time("1900-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("9999-12-31T23:59:59Z"), Ok(MAX_TIME_SECS));
        for bad in [
            "",
            "yesterday",
            "2025-01-01",
            "2025-02-30T00:00:00Z",
            "1e9",
            " 1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }
}
