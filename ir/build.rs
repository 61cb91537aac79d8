//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto`
//! (onnx 1.23.2) with protox, so no system `protoc` is needed.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"]).expect("compile onnx.proto");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)
        .expect("generate ONNX types");
}
