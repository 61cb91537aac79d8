//! Load a model, run a pipeline, save it: sculpt as a library.
//!
//! cargo run --release --example optimize -- IN.onnx OUT.onnx [PIPELINE]

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: optimize IN.onnx OUT.onnx [PIPELINE]");
    };
    let pipeline = rest.first().map_or("cleanup", String::as_str);

    let mut model = sculpt_ir::load(input.as_ref())?;
    let mut manager = sculpt_passes::PassManager::new(sculpt_passes::Pipeline::parse(pipeline)?)?;
    let report = manager.run(&mut model, |_| {})?;
    sculpt_ir::onnx::save(&model, output.as_ref(), &Default::default())?;

    println!(
        "{}: {} -> {} nodes",
        report.pipeline, report.before.nodes, report.after.nodes
    );
    Ok(())
}
