#![cfg(not(target_arch = "wasm32"))]
//! Every WGSL shader parses and validates with naga, and declares the 3-line header.

/// Every shader module as the engine builds it (`gpu::SHADERS`, some composed of several files),
/// and the two that are not in it (present: the canvas's render pass; matmul: the yardstick).
fn modules() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut all: Vec<(String, String)> = ddim_webgpu::gpu::SHADERS.iter().map(|(n, src, _)| (n.to_string(), src.to_string())).collect();
    for name in ["present", "matmul"] {
        all.push((name.into(), std::fs::read_to_string(dir.join(format!("{name}.wgsl"))).unwrap()));
    }
    all
}

fn parse(name: &str, src: &str) -> naga::Module {
    naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)))
}

#[test]
fn every_shader_file_has_its_header() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.len() >= 10, "expected every kernel in shaders/, found {}", files.len());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = src.lines().take(3).collect();
        assert!(header.iter().all(|l| l.starts_with("//")), "{}: needs a 3-line // header", path.display());
        assert!(src.contains("Bindings:") && src.contains("Workgroup"), "{}: header names bindings and workgroup shape", path.display());
    }
}

#[test]
fn every_shader_validates_with_naga() {
    for (name, src) in modules() {
        let module = parse(&name, &src);
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for ep in &module.entry_points {
            let [x, y, z] = ep.workgroup_size;
            if ep.stage != naga::ShaderStage::Compute {
                continue;
            }
            assert!(x * y * z <= 256, "{name}: {} uses {} invocations, over WebGPU's default 256", ep.name, x * y * z);
        }
    }
}

/// Every file is a module of the engine or a part of one (conv2d.wgsl, before both conv modules).
#[test]
fn every_shader_file_is_used_by_the_engine() {
    let modules = modules();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let src = std::fs::read_to_string(&p).unwrap();
        assert!(modules.iter().any(|(_, m)| m.contains(&src)), "{} is in no module of gpu::SHADERS", p.display());
    }
}

/// Every `kernel_params!` struct has the size and field offsets naga reflects from its shader's
/// uniform `Params` struct, field by field, by name.
#[test]
fn kernel_params_match_their_wgsl_structs() {
    let layouts = ddim_webgpu::gpu::ops::all_layouts();
    let mut matched = std::collections::HashSet::new();
    for (name, src) in modules() {
        let module = parse(&name, &src);
        // A struct names its shader file; a composed module's (conv2d_gemm: conv2d.wgsl + its own)
        // is its shared first file's.
        let stem = name.as_str();
        let uniforms: Vec<_> = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::Uniform)
            .map(|(_, g)| &module.types[g.ty])
            .collect();
        for ty in uniforms {
            let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{stem}: uniform is not a struct") };
            // Its own struct first (group_norm_backward has one), else the shared file's.
            let l = layouts
                .iter()
                .find(|l| l.shader == stem)
                .or_else(|| layouts.iter().find(|l| stem.starts_with(&format!("{}_", l.shader))))
                .unwrap_or_else(|| panic!("{stem}: no kernel_params! struct"));
            matched.insert(l.rust_name);
            assert_eq!(l.size, *span as usize, "{stem}: {} is {} bytes, WGSL says {span}", l.rust_name, l.size);
            let wgsl: Vec<(&str, usize)> = members.iter().map(|m| (m.name.as_deref().unwrap(), m.offset as usize)).collect();
            assert_eq!(l.fields, wgsl, "{stem}: {} fields (name, offset) differ from WGSL", l.rust_name);
        }
    }
    assert_eq!(matched.len(), layouts.len(), "every kernel_params! struct has a shader uniform");
}
