//! How deeply a serialized model nests messages, read before decoding.
//!
//! ONNX messages nest without end along two paths: a graph holds nodes,
//! whose attributes hold graphs (If, Loop and Scan bodies), and a type
//! holds types (sequence, map and optional elements). prost's decoder
//! stops at 100 levels of nesting, which refuses valid models (an If
//! nested 34 deep), so the decoder runs without that limit and this scan,
//! which follows only those paths and never recurses past [`MAX_DEPTH`],
//! refuses what goes deeper first, with the depth named.

/// The most nested messages a model may have: about 130 nested If bodies.
pub const MAX_DEPTH: usize = 400;

/// The message kinds on the recursive paths.
#[derive(Clone, Copy)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Function,
    TrainingInfo,
    ValueInfo,
    Type,
    /// TypeProto.Sequence and .Optional (elem_type = 1), .Map (value_type = 2).
    TypeElement,
}

/// The kind of the message field `field` of `kind` holds, when it is on a
/// recursive path.
fn child(kind: Kind, field: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, field) {
        (Model, 7) => Graph,
        (Model, 25) => Function,
        (Model, 20) => TrainingInfo,
        (TrainingInfo, 1 | 2) => Graph,
        (Graph, 1) => Node,
        (Graph, 11..=13) => ValueInfo,
        (Function, 7) => Node,
        (Function, 12) => ValueInfo,
        (Node, 5) => Attribute,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 14 | 15) => Type,
        (ValueInfo, 2) => Type,
        (Type, 4 | 5 | 9) => TypeElement,
        (TypeElement, 1 | 2) => Type,
        _ => return None,
    })
}

/// The deepest nesting of `bytes` (a ModelProto), or why it cannot be
/// read; deeper than [`MAX_DEPTH`] is an error.
pub fn check(bytes: &[u8]) -> Result<usize, String> {
    depth(bytes, Kind::Model, 1)
}

/// The deepest nesting of `bytes`, a message of a type not known here
/// (the encoded fields the text form carries): every length-delimited
/// field that reads as a message counts as one, so this bounds the real
/// depth from above.
pub fn check_any(bytes: &[u8]) -> Result<usize, String> {
    depth_any(bytes, 1)
}

fn depth_any(bytes: &[u8], level: usize) -> Result<usize, String> {
    if level > MAX_DEPTH {
        return Err(format!("messages nest more than {MAX_DEPTH} deep"));
    }
    let mut deepest = level;
    let walk = walk_fields(bytes, |_, payload| {
        // A payload that does not read as a message is a leaf; one that
        // nests too deep is refused.
        match depth_any(payload, level + 1) {
            Ok(d) => deepest = deepest.max(d),
            Err(e) if e.contains("nest more than") => return Err(e),
            Err(_) => {}
        }
        Ok(())
    })?;
    match walk {
        Walk::Whole => Ok(deepest),
        Walk::Group => Err("not a message".into()),
        Walk::Overrun => Err("a field runs past the end of the data".into()),
    }
}

fn depth(bytes: &[u8], kind: Kind, level: usize) -> Result<usize, String> {
    if level > MAX_DEPTH {
        return Err(format!(
            "messages nest more than {MAX_DEPTH} deep (subgraphs or types within each other)"
        ));
    }
    let mut deepest = level;
    // Groups (unused by ONNX) and a last fixed-size field cut short are
    // left to the decoder to judge.
    walk_fields(bytes, |field, payload| {
        if let Some(inner) = child(kind, field) {
            deepest = deepest.max(depth(payload, inner, level + 1)?);
        }
        Ok(())
    })?;
    Ok(deepest)
}

/// How [`walk_fields`] ended.
enum Walk {
    /// Every field read.
    Whole,
    /// Stopped at a group or unknown wire type.
    Group,
    /// A fixed-size field ran past the end.
    Overrun,
}

/// Reads the fields of one message, handing each length-delimited one
/// (field number, payload) to `on_field`.
fn walk_fields(
    bytes: &[u8],
    mut on_field: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<Walk, String> {
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let end = length_end(bytes, &mut at)?;
                on_field(key >> 3, &bytes[at..end])?;
                at = end;
            }
            _ => return Ok(Walk::Group),
        }
    }
    Ok(if at > bytes.len() {
        Walk::Overrun
    } else {
        Walk::Whole
    })
}

/// Reads a length and returns where the field it starts ends.
fn length_end(bytes: &[u8], at: &mut usize) -> Result<usize, String> {
    let len = usize::try_from(varint(bytes, at)?).map_err(|_| "a length overflows")?;
    at.checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| "a field runs past the end of the data".to_string())
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("the data ends inside a number")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a number is longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field `field` holding `inner`, length-delimited.
    fn message(field: u64, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8];
        let mut len = inner.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(inner);
        out
    }

    /// A model whose graph holds an If nested `levels` deep.
    fn nested_ifs(levels: usize) -> Vec<u8> {
        let mut graph = Vec::new();
        for _ in 0..levels {
            let attribute = message(6, &graph);
            let node = message(5, &attribute);
            graph = message(1, &node);
        }
        message(7, &graph)
    }

    #[test]
    fn nesting_is_measured_along_subgraphs() {
        // Model, then graph → node → attribute per level, then the last graph.
        assert_eq!(check(&nested_ifs(2)).unwrap(), 1 + 3 * 2 + 1);
        assert!(check(&nested_ifs(40)).is_ok());
        let err = check(&nested_ifs(200)).unwrap_err();
        assert!(err.contains("nest more than"), "{err}");
    }

    #[test]
    fn unknown_messages_are_bounded_from_above() {
        assert!(check_any(&nested_ifs(40)).unwrap() > 3 * 40);
        assert!(check_any(&nested_ifs(200)).is_err());
        // Bytes that are no message are a leaf.
        assert_eq!(check_any(&message(1, b"\xff\xff")).unwrap(), 1);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(check(&[0x3a, 0x05, 0x01]).is_err());
        assert!(check(&[0x08, 0xff]).is_err());
    }
}
