//! A macro that declares a finite alphabet (states, events or outputs) as a
//! plain Rust enum with a display name per symbol.

/// Declares a `Copy` enum whose variants form a finite alphabet.
///
/// Each variant gets a display name (the seed's spelling, e.g. `"Fetching Data"`
/// or `"FETCH_DATA"`) and an identifier (the variant name) for diagram formats
/// that need one. The enum gets `ALL` (declaration order), `name`, `id` and
/// `from_name` (which accepts either spelling, case-insensitively).
macro_rules! symbols {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $display:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every symbol, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// The seed's spelling of this symbol.
            pub const fn name(self) -> &'static str {
                match self { $( $name::$variant => $display ),+ }
            }

            /// An identifier for this symbol (the variant name).
            pub const fn id(self) -> &'static str {
                match self { $( $name::$variant => stringify!($variant) ),+ }
            }

            /// Finds a symbol by its seed spelling or its identifier, ignoring case,
            /// spaces, dashes and underscores.
            pub fn from_name(text: &str) -> Option<Self> {
                let want = $crate::fsm::symbols::normalise(text);
                Self::ALL.iter().copied().find(|s| {
                    $crate::fsm::symbols::normalise(s.name()) == want
                        || $crate::fsm::symbols::normalise(s.id()) == want
                })
            }
        }

        impl $crate::fsm::spec::Named for $name {
            fn name(self) -> &'static str {
                $name::name(self)
            }

            fn id(self) -> &'static str {
                $name::id(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Lower-cases `text` and drops everything but letters and digits, so that
/// `"Fetching Data"`, `"fetching-data"` and `"FetchingData"` compare equal.
pub(crate) fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}
