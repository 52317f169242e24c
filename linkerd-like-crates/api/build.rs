//! Generates the API code from `proto/` with protox (pure Rust; no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = [
        "destination.proto",
        "identity.proto",
        "policy.proto",
        "tap.proto",
        "stats.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={proto_dir}/{file}");
    }
    let fds = protox::compile(files, [proto_dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
