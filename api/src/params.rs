//! [`InstrumentParam`]: the `instrument` parameter, documented with its
//! pattern ([`INSTRUMENT_PATTERN`]) and checked by the parser that defines
//! it (`Instrument::from_str`), without a regular expression at run time.
//! (poem-openapi's `pattern` validator compiles its expression on every
//! request: on the hot path of `/api/v1/ohlcv` that cost more than
//! answering.)
//!
//! What must never happen: the document's pattern and the parser disagree
//! (the tests check both ways with the pattern compiled once).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};

use candela_actors::domain::Instrument;

use crate::model::INSTRUMENT_PATTERN;

/// An instrument named in a request, `MARKET:BASE-QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentParam(pub Instrument);

impl Type for InstrumentParam {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string(instrument)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(INSTRUMENT_PATTERN.to_owned()),
            ..MetaSchema::new("string")
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

impl ParseFromParameter for InstrumentParam {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value.parse().map(InstrumentParam).map_err(
            |e: candela_actors::domain::tick::InvalidInstrument| ParseError::custom(e.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_accepts_exactly_the_pattern() {
        let pattern = regex::Regex::new(INSTRUMENT_PATTERN).unwrap();
        let long = "A".repeat(32);
        let longer = "A".repeat(33);
        for text in [
            "Coinbase:BTC-USD".to_owned(),
            "a.b:c.d-e.f".to_owned(),
            format!("{long}:{long}-{long}"),
            format!("{longer}:BTC-USD"),
            "BTC-USD".into(),
            ":BTC-USD".into(),
            "X:BTC-".into(),
            "X:-USD".into(),
            "X:B-C-D".into(),
            "X:B:C-D".into(),
            "X:BTC-US D".into(),
            "X:BTC-USDé".into(),
            "X:BTC_1-USD".into(),
            String::new(),
        ] {
            assert_eq!(
                InstrumentParam::parse_from_parameter(&text).is_ok(),
                pattern.is_match(&text),
                "{text:?}"
            );
        }
    }
}
