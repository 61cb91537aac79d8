//! Corrupted corpus models (truncations, bit flips, byte splices) must give
//! an error or a valid model, never a panic.

use crate::corpus_models;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutations(bytes: &[u8], rng: &mut Rng, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..count {
        let mut b = bytes.to_vec();
        match i % 4 {
            0 => b.truncate(rng.below(bytes.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
            }
            2 => {
                // Bit flips in the first KiB, where structure (not weights) lives.
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len().min(1024));
                    b[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let at = rng.below(b.len());
                let len = rng.below(64).min(b.len() - at);
                for x in &mut b[at..at + len] {
                    *x = rng.next() as u8;
                }
            }
        }
        out.push(b);
    }
    out
}

#[test]
fn corrupted_models_never_panic() {
    let mut rng = Rng(0x5eed);
    let mut outcomes = (0usize, 0usize);
    for (name, path) in corpus_models() {
        let bytes = std::fs::read(&path).unwrap();
        let count = if bytes.len() > 5_000_000 { 8 } else { 120 };
        for (i, m) in mutations(&bytes, &mut rng, count).into_iter().enumerate() {
            let result = std::panic::catch_unwind(|| {
                let model = sculpt_ir::onnx::from_bytes(m.into(), None)?;
                sculpt_ir::verify::check(&model)?;
                let _ = sculpt_ir::text::print(&model, &Default::default());
                let _ = sculpt_ir::onnx::to_bytes(&model);
                let mut g = model.graph.clone();
                sculpt_ir::ops::infer::infer_graph(&mut g)?;
                sculpt_ir::ops::cost::graph_flops(&g);
                Ok::<_, sculpt_ir::IrError>(())
            });
            match result {
                Ok(Ok(())) => outcomes.0 += 1,
                Ok(Err(e)) => {
                    assert!(!e.to_string().is_empty());
                    outcomes.1 += 1
                }
                Err(_) => panic!("{name}: mutation {i} panicked"),
            }
        }
    }
    eprintln!(
        "corrupted models: {} still valid, {} refused with an error",
        outcomes.0, outcomes.1
    );
    assert!(outcomes.1 > 0);
}
