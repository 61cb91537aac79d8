//! Tokens of the text form, with line and column for error messages.

use crate::{IrError, Result};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `%name` or `%"any name"`.
    Value(String),
    Str(Vec<u8>),
    Word(String),
    Number(String),
    Arrow,
    Punct(char),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub column: usize,
}

pub(crate) fn lex(text: &str) -> Result<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    let err = |line: usize, column: usize, message: String| IrError::Parse {
        line,
        column,
        message,
    };
    while i < bytes.len() {
        let b = bytes[i];
        let column = i - line_start + 1;
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = if b == b'%' {
            i += 1;
            if bytes.get(i) == Some(&b'"') {
                let (s, next) = string(bytes, i).map_err(|m| err(line, column, m))?;
                i = next;
                Tok::Value(
                    String::from_utf8(s)
                        .map_err(|_| err(line, column, "value name is not UTF-8".into()))?,
                )
            } else {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_./-".contains(&bytes[i]))
                {
                    i += 1;
                }
                if start == i {
                    return Err(err(line, column, "expected a value name after '%'".into()));
                }
                Tok::Value(text[start..i].to_string())
            }
        } else if b == b'"' {
            let (s, next) = string(bytes, i).map_err(|m| err(line, column, m))?;
            i = next;
            Tok::Str(s)
        } else if bytes[i..].starts_with(b"->") {
            i += 2;
            Tok::Arrow
        } else if b.is_ascii_digit()
            || (b == b'-'
                && i + 1 < bytes.len()
                && (bytes[i + 1].is_ascii_alphanumeric() || bytes[i + 1] == b'.'))
        {
            let start = i;
            i += 1;
            while i < bytes.len() {
                let c = bytes[i];
                let exp_sign = (c == b'-' || c == b'+')
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && !text[start..i].contains("0x");
                if c.is_ascii_alphanumeric() || c == b'.' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Number(text[start..i].to_string())
        } else if b.is_ascii_alphabetic() || b == b'_' || b == b'$' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || b"_.$".contains(&bytes[i]))
            {
                i += 1;
            }
            Tok::Word(text[start..i].to_string())
        } else if b"()[]{},=:@?*<>".contains(&b) {
            i += 1;
            Tok::Punct(b as char)
        } else {
            return Err(err(
                line,
                column,
                format!(
                    "unexpected character '{}'",
                    text[i..].chars().next().unwrap_or('?')
                ),
            ));
        };
        tokens.push(Token { tok, line, column });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        line,
        column: i - line_start + 1,
    });
    Ok(tokens)
}

/// A double-quoted string starting at `start`; returns its bytes and the
/// index after the closing quote.
fn string(bytes: &[u8], start: usize) -> std::result::Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let esc = *bytes.get(i + 1).ok_or("unterminated escape")?;
                i += 2;
                match esc {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' => {
                        let hex = bytes.get(i..i + 2).ok_or("short \\x escape")?;
                        let s = std::str::from_utf8(hex).map_err(|_| "bad \\x escape")?;
                        out.push(u8::from_str_radix(s, 16).map_err(|_| "bad \\x escape")?);
                        i += 2;
                    }
                    other => return Err(format!("unknown escape '\\{}'", other as char)),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

/// Quotes bytes as the lexer reads them back.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    let text = String::from_utf8_lossy(bytes);
    let valid = matches!(text, std::borrow::Cow::Borrowed(_));
    if valid {
        for c in text.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    s.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => s.push(c),
            }
        }
    } else {
        for &b in bytes {
            match b {
                b'"' => s.push_str("\\\""),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\x{b:02x}")),
            }
        }
    }
    s.push('"');
    s
}
