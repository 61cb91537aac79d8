//! Pass options, declared once beside their pass.
//!
//! A pass declares its options as one typed struct with [`pass_options!`]:
//! each field's type, default and help text (its doc comment) sit together,
//! as MLIR's declarative pass options do. The parser, `sculpt passes`,
//! `docs/passes.md` and the rejection of unknown options all read that one
//! declaration. A choice is an enum declared with [`choice!`] (`FromStr`,
//! `Display`, and its alternatives for the listing).
//!
//! A value's text form is [`OptionValue`]: `true`/`false`, whole numbers
//! (`count`), finite numbers, shares, byte counts (`512M`), `|`-separated
//! patterns, paths. `Option<T>` takes `none` (also its default's text).

use crate::pipeline::Options as StepOptions;
use crate::{PassError, Result};

/// One option as `sculpt passes` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OptionInfo {
    pub name: &'static str,
    /// What values it takes: `bool`, `count`, `share`, `a|b|c`, …
    pub kind: String,
    /// The default, as text that parses back to it.
    pub default: String,
    pub help: String,
}

/// A type an option can have: how it reads and prints as text.
pub trait OptionValue: Sized {
    /// What values it takes, for the listing: `bool`, `count`, `a|b|c`…
    fn kind() -> String;
    /// The value a pipeline's text gives, or why it is not one.
    fn parse(text: &str) -> std::result::Result<Self, String>;
    /// The text that parses back to this value.
    fn text(&self) -> String;
}

/// The options of one pass, declared with [`pass_options!`].
pub trait PassOptions: Sized + Default {
    /// Every option, in declaration order.
    fn spec() -> Vec<OptionInfo>;
    /// The options a pipeline step gives, defaults for the rest; an option
    /// the pass does not declare is refused, naming those it does.
    fn parse(given: &StepOptions) -> Result<Self>;
}

/// A pass's help text: its doc comment's lines, joined.
pub fn help(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A failed check of option `option` of pass `pass`.
pub fn invalid(pass: &str, option: &str, reason: impl Into<String>) -> PassError {
    PassError::Option {
        pass: pass.into(),
        option: option.into(),
        reason: reason.into(),
    }
}

impl OptionValue for bool {
    fn kind() -> String {
        "bool".into()
    }
    fn parse(text: &str) -> std::result::Result<bool, String> {
        match text {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            v => Err(format!("'{v}' is not true or false")),
        }
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for usize {
    fn kind() -> String {
        "count".into()
    }
    fn parse(text: &str) -> std::result::Result<usize, String> {
        text.parse()
            .map_err(|_| format!("'{text}' is not a whole number"))
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for u64 {
    fn kind() -> String {
        "count".into()
    }
    fn parse(text: &str) -> std::result::Result<u64, String> {
        text.parse()
            .map_err(|_| format!("'{text}' is not a whole number"))
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for f64 {
    fn kind() -> String {
        "number".into()
    }
    fn parse(text: &str) -> std::result::Result<f64, String> {
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            Ok(_) => Err(format!("'{text}' is not a finite number")),
            Err(_) => Err(format!("'{text}' is not a number")),
        }
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl<T: OptionValue> OptionValue for Option<T> {
    fn kind() -> String {
        T::kind()
    }
    fn parse(text: &str) -> std::result::Result<Option<T>, String> {
        match text {
            "none" => Ok(None),
            _ => T::parse(text).map(Some),
        }
    }
    fn text(&self) -> String {
        self.as_ref().map_or_else(|| "none".into(), T::text)
    }
}

/// A value, or `auto`: the pass chooses (each pass says how).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Auto<T> {
    Auto,
    Value(T),
}

impl<T: OptionValue> OptionValue for Auto<T> {
    fn kind() -> String {
        format!("{}|auto", T::kind())
    }
    fn parse(text: &str) -> std::result::Result<Auto<T>, String> {
        match text {
            "auto" => Ok(Auto::Auto),
            _ => T::parse(text).map(Auto::Value),
        }
    }
    fn text(&self) -> String {
        match self {
            Auto::Auto => "auto".into(),
            Auto::Value(v) => v.text(),
        }
    }
}

/// A share of something: a number from 0 to 1 (each pass says whether the
/// ends are allowed).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Share(pub f64);

impl OptionValue for Share {
    fn kind() -> String {
        "share".into()
    }
    fn parse(text: &str) -> std::result::Result<Share, String> {
        match f64::parse(text)? {
            v if (0.0..=1.0).contains(&v) => Ok(Share(v)),
            _ => Err(format!("'{text}' is not a share (0 to 1)")),
        }
    }
    fn text(&self) -> String {
        self.0.to_string()
    }
}

impl Share {
    /// The share of something to remove, which must leave some: below 1.
    /// `Err` is the option's failed check, for pass `pass`, option `key`.
    pub fn to_remove(self, pass: &str, key: &str) -> crate::Result<f64> {
        match self.0 < 1.0 {
            true => Ok(self.0),
            false => Err(invalid(pass, key, "a share, at least 0 and below 1")),
        }
    }
}

/// A byte count: a number with an optional K, M or G suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bytes(pub u64);

impl OptionValue for Bytes {
    fn kind() -> String {
        "bytes".into()
    }
    fn parse(text: &str) -> std::result::Result<Bytes, String> {
        parse_bytes(text)
            .map(Bytes)
            .ok_or_else(|| format!("'{text}' is not a byte count (like 512K or 64M)"))
    }
    fn text(&self) -> String {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
        match UNITS
            .iter()
            .find(|(u, _)| self.0 >= *u && self.0.is_multiple_of(*u))
        {
            Some((u, s)) => format!("{}{s}", self.0 / u),
            None => self.0.to_string(),
        }
    }
}

/// A byte count: a number with an optional K, M or G suffix (powers of 1024).
pub fn parse_bytes(v: &str) -> Option<u64> {
    let (digits, shift) = match v.chars().last() {
        Some('K' | 'k') => (&v[..v.len() - 1], 10),
        Some('M' | 'm') => (&v[..v.len() - 1], 20),
        Some('G' | 'g') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `|`-separated name patterns (`*` wildcards); `none` for none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    pub fn of(patterns: &[&str]) -> Patterns {
        Patterns(patterns.iter().map(|p| p.to_string()).collect())
    }
}

impl OptionValue for Patterns {
    fn kind() -> String {
        "patterns".into()
    }
    fn parse(text: &str) -> std::result::Result<Patterns, String> {
        Ok(Patterns(
            text.split('|')
                .filter(|s| !s.is_empty() && *s != "none")
                .map(String::from)
                .collect(),
        ))
    }
    fn text(&self) -> String {
        match self.0.is_empty() {
            true => "none".into(),
            false => self.0.join("|"),
        }
    }
}

/// A file path.
#[derive(Clone, Debug, PartialEq)]
pub struct FilePath(pub std::path::PathBuf);

impl OptionValue for FilePath {
    fn kind() -> String {
        "path".into()
    }
    fn parse(text: &str) -> std::result::Result<FilePath, String> {
        match text.is_empty() {
            true => Err("an empty path".into()),
            false => Ok(FilePath(text.into())),
        }
    }
    fn text(&self) -> String {
        self.0.display().to_string()
    }
}

/// Free text, checked by the pass that reads it.
impl OptionValue for String {
    fn kind() -> String {
        "text".into()
    }
    fn parse(text: &str) -> std::result::Result<String, String> {
        Ok(text.into())
    }
    fn text(&self) -> String {
        self.clone()
    }
}

/// Declares a choice: an enum whose variants are written as the given
/// texts, with `FromStr`, `Display` and [`OptionValue`] (its kind lists
/// the alternatives, `a|b|c`).
///
/// ```ignore
/// choice! {
///     /// How a refit is done.
///     pub enum Reconstruct { Ls = "ls", Bias = "bias" }
/// }
/// ```
#[macro_export]
macro_rules! choice {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The text a pipeline writes for it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<$name, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "'{text}' is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::options::OptionValue for $name {
            fn kind() -> String {
                [$($text),+].join("|")
            }
            fn parse(text: &str) -> std::result::Result<$name, String> {
                text.parse()
            }
            fn text(&self) -> String {
                self.as_str().into()
            }
        }
    };
}

/// Declares a pass's options: a struct whose fields are the options, each
/// with its type, default and help (the field's doc comment), and its
/// [`PassOptions`] impl.
///
/// ```ignore
/// pass_options! {
///     pub struct EraseOptions {
///         /// erase branches whose output is identically zero (exact)
///         zero: bool = true,
///     }
/// }
/// ```
#[macro_export]
macro_rules! pass_options {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name { $($(#[doc = $doc])+ pub $field: $ty),* }

        impl Default for $name {
            fn default() -> $name {
                $name { $($field: $default),* }
            }
        }

        impl $crate::options::PassOptions for $name {
            fn spec() -> Vec<$crate::options::OptionInfo> {
                let defaults = $name::default();
                vec![$($crate::options::OptionInfo {
                    name: stringify!($field),
                    kind: <$ty as $crate::options::OptionValue>::kind(),
                    default: $crate::options::OptionValue::text(&defaults.$field),
                    help: $crate::options::help(&[$($doc),+]),
                }),*]
            }

            fn parse(given: &$crate::pipeline::Options) -> $crate::Result<$name> {
                given.reject_unknown(&[$(stringify!($field)),*])?;
                let mut options = $name::default();
                $(if let Some(text) = given.get(stringify!($field)) {
                    options.$field = <$ty as $crate::options::OptionValue>::parse(text)
                        .map_err(|reason| given.invalid(stringify!($field), reason))?;
                })*
                Ok(options)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    choice! {
        /// A test choice.
        enum Color { Red = "red", Green = "green" }
    }

    pass_options! {
        struct Demo {
            /// a colour
            color: Color = Color::Red,
            /// how many,
            /// in two lines
            count: usize = 3,
            /// a cap
            cap: Option<Bytes> = None,
            /// names
            names: Patterns = Patterns::of(&["a*", "b"]),
        }
    }

    fn given(pairs: &[(&str, &str)]) -> StepOptions {
        let values: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StepOptions::new("demo", values)
    }

    #[test]
    fn declared_once_listed_with_defaults_and_help() {
        let spec = Demo::spec();
        let rows: Vec<(&str, &str, &str, &str)> = spec
            .iter()
            .map(|o| (o.name, o.kind.as_str(), o.default.as_str(), o.help.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("color", "red|green", "red", "a colour"),
                ("count", "count", "3", "how many, in two lines"),
                ("cap", "bytes", "none", "a cap"),
                ("names", "patterns", "a*|b", "names"),
            ]
        );
    }

    #[test]
    fn parses_given_values_and_keeps_defaults() {
        let d = Demo::parse(&given(&[("color", "green"), ("cap", "64M")])).unwrap();
        assert_eq!(d.color, Color::Green);
        assert_eq!(d.count, 3);
        assert_eq!(d.cap, Some(Bytes(64 << 20)));
        assert_eq!(Bytes(64 << 20).text(), "64M");
    }

    #[test]
    fn refuses_unknown_options_and_bad_values_naming_them() {
        let e = Demo::parse(&given(&[("colour", "red")])).unwrap_err();
        assert!(e.to_string().contains("'colour'") && e.to_string().contains("color, count"));
        let e = Demo::parse(&given(&[("color", "blue")])).unwrap_err();
        assert!(
            e.to_string().contains("'blue' is not one of red, green"),
            "{e}"
        );
        let e = Demo::parse(&given(&[("count", "-1")])).unwrap_err();
        assert!(e.to_string().contains("option 'count'"), "{e}");
    }
}
