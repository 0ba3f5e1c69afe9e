#![cfg(not(target_arch = "wasm32"))]
//! Every WGSL shader parses and validates with naga, and declares the 3-line header.

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "expected every kernel in shaders/, found {}", files.len());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let header: Vec<&str> = src.lines().take(3).collect();
        assert!(header.iter().all(|l| l.starts_with("//")), "{}: needs a 3-line // header", path.display());
        assert!(src.contains("Bindings:") && src.contains("Workgroup"), "{}: header names bindings and workgroup shape", path.display());
        for ep in &module.entry_points {
            let [x, y, z] = ep.workgroup_size;
            if ep.stage != naga::ShaderStage::Compute {
                continue;
            }
            assert!(x * y * z <= 256, "{}: {} uses {} invocations, over WebGPU's default 256", path.display(), ep.name, x * y * z);
        }
    }
}

#[test]
fn every_shader_file_is_used_by_the_engine() {
    let names: Vec<&str> = ddim_webgpu::gpu::SHADERS.iter().map(|(n, _, _)| *n).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        // present.wgsl is the canvas's render shader; matmul.wgsl is `ddim bench-matmul`'s yardstick.
        assert!(names.contains(&stem.as_str()) || stem == "present" || stem == "matmul", "{stem}.wgsl is not in gpu::SHADERS");
    }
}

/// Every `kernel_params!` struct has the size and field offsets naga reflects from its shader's
/// uniform `Params` struct, field by field, by name.
#[test]
fn kernel_params_match_their_wgsl_structs() {
    let layouts = ddim_webgpu::gpu::ops::all_layouts();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut shaders_with_params = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let module = naga::front::wgsl::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let uniforms: Vec<_> = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::Uniform)
            .map(|(_, g)| &module.types[g.ty])
            .collect();
        for ty in uniforms {
            shaders_with_params += 1;
            let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{stem}: uniform is not a struct") };
            let l = layouts.iter().find(|l| l.shader == stem).unwrap_or_else(|| panic!("{stem}.wgsl: no kernel_params! struct"));
            assert_eq!(l.size, *span as usize, "{stem}: {} is {} bytes, WGSL says {span}", l.rust_name, l.size);
            let wgsl: Vec<(&str, usize)> = members.iter().map(|m| (m.name.as_deref().unwrap(), m.offset as usize)).collect();
            assert_eq!(l.fields, wgsl, "{stem}: {} fields (name, offset) differ from WGSL", l.rust_name);
        }
    }
    assert_eq!(shaders_with_params, layouts.len(), "one struct per shader with a uniform");
}
