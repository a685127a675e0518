//! Generates Rust code for the bus protocol from `schema/*.capnp` (needs the `capnp` compiler,
//! installed by `scripts/install-deps`).
fn main() {
    println!("cargo:rerun-if-changed=schema/zoomate_bus.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        // The generated module lives at crate::bus::zoomate_bus_capnp.
        .default_parent_module(vec!["bus".into()])
        .file("schema/zoomate_bus.capnp")
        .run()
        .expect("compiling schema/zoomate_bus.capnp (is the capnp compiler installed? run scripts/install-deps)");
}
