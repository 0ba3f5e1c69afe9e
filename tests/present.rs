#![cfg(not(target_arch = "wasm32"))]
//! The render-pass presenter (shaders/present.wgsl) draws exactly the pixels of the CPU presenter
//! (`present::grid_rgba`): rendered on lavapipe into an RGBA8 texture and read back.

mod common;

use common::*;
use ddim_webgpu::gpu::draw::{Look, SampleDrawer};
use ddim_webgpu::image_grid::{grid_cols, grid_rgba, grid_rgba_mapped, SIGNED_SCALE};
use ddim_webgpu::Tensor;

fn render(x: &Tensor, cols: usize, signed: Option<f32>) -> (usize, usize, Vec<u8>) {
    let shape = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    render_look(&x.data, shape, cols, Look { signed, ..Default::default() })
}

/// Draws the tensor of `shape` that `look` finds in `data`.
fn render_look(data: &[f32], shape: [usize; 4], cols: usize, look: Look) -> (usize, usize, Vec<u8>) {
    render_panels(data, shape, cols, &[(look, 0)], cols * shape[3])
}

/// Draws panels side by side into a target `width` wide: each the tensor `look` finds in `data`,
/// from column `left`.
fn render_panels(data: &[f32], shape: [usize; 4], cols: usize, panels: &[(Look, u32)], width: usize) -> (usize, usize, Vec<u8>) {
    let gpu = gpu();
    let (w, h) = (width, shape[0].div_ceil(cols) * shape[2]);
    let src = gpu.upload(data, "x").unwrap();
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("canvas stand-in"),
        size: wgpu::Extent3d { width: w as u32, height: h as u32, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let drawers: Vec<SampleDrawer> =
        panels.iter().map(|&(look, left)| SampleDrawer::panel(&gpu, &src, (shape, cols), format, look, left)).collect();
    let pitch = (w * 4).next_multiple_of(256);
    let out = gpu.storage_buffer((pitch * h) as u64, "pixels").unwrap();
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let view = texture.create_view(&Default::default());
    for (k, d) in drawers.iter().enumerate() {
        d.draw_panel(&mut enc, &view, k == 0);
    }
    enc.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &out,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(pitch as u32), rows_per_image: None },
        },
        wgpu::Extent3d { width: w as u32, height: h as u32, depth_or_array_layers: 1 },
    );
    gpu.queue.submit([enc.finish()]);
    let words = pollster::block_on(gpu.read(&out, pitch * h / 4)).unwrap();
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let px = (0..h).flat_map(|y| bytes[y * pitch..y * pitch + w * 4].to_vec()).collect();
    (w, h, px)
}

#[test]
fn present_shader_draws_the_cpu_presenters_pixels() {
    // Grey (1 channel) and RGB (3 channels) batches, with an empty tile in the grid, values past ±1.
    // The signed map of a predicted noise (ε̂ ~ N(0, 1), ±SIGNED_SCALE) too: blue–white–red for one
    // channel, each channel around mid-grey for three.
    let cases =
        [([5, 1, 7, 9], 1u64, None), ([3, 3, 6, 5], 2, None), ([5, 1, 7, 9], 3, Some(SIGNED_SCALE)), ([3, 3, 6, 5], 4, Some(SIGNED_SCALE))];
    for (shape, seed, signed) in cases {
        let x = scaled(randn(&shape, seed), if signed.is_some() { 2.0 } else { 0.8 });
        let cols = grid_cols(shape[0]);
        let (w, h, want) = if signed.is_some() { grid_rgba_mapped(&x, cols, signed) } else { grid_rgba(&x, cols) };
        if signed.is_some() && shape[1] == 1 {
            // Negative values are drawn blue-dominated, positive red-dominated.
            let (neg, pos) = (x.data.iter().position(|v| *v < -1.0).unwrap(), x.data.iter().position(|v| *v > 1.0).unwrap());
            let px = |i: usize| {
                let (tile, rest) = (i / (shape[2] * shape[3]), i % (shape[2] * shape[3]));
                let (gy, gx) = ((tile / cols) * shape[2] + rest / shape[3], (tile % cols) * shape[3] + rest % shape[3]);
                &want[(gy * w + gx) * 4..][..3]
            };
            assert!(px(neg)[2] > px(neg)[0] && px(pos)[0] > px(pos)[2], "blue below zero, red above");
        }
        let (gw, gh, got) = render(&x, cols, signed);
        assert_eq!((gw, gh), (w, h));
        let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        // The fragment shader writes level/255 into an unorm8 target: exact, up to one level of
        // float rounding at a .5 boundary.
        assert!(worst <= 1, "max channel difference {worst}");
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert!(differing * 100 < got.len(), "{differing} of {} channels differ", got.len());
    }
}

/// The guidance views draw from the U-Net's output buffer in place: its second half (ε(∅)), and
/// w·(first − second) (the guidance term), as the CPU presenter draws those tensors.
#[test]
fn present_shader_draws_the_guidance_views_in_place() {
    let shape = [3, 1, 6, 5];
    let count: usize = shape.iter().product();
    let m = scaled(randn(&[2 * shape[0], 1, 6, 5], 7), 2.0);
    let (cond, uncond) = m.data.split_at(count);
    let w = 1.5;
    let cols = grid_cols(shape[0]);
    let as_tensor = |d: Vec<f32>| Tensor::new(shape.to_vec(), d).unwrap();
    let cases = [
        (Look { signed: Some(SIGNED_SCALE), offset: count, minus: None }, as_tensor(uncond.to_vec())),
        (
            Look { signed: Some(SIGNED_SCALE), offset: 0, minus: Some((count, w)) },
            as_tensor(cond.iter().zip(uncond).map(|(c, u)| w * (c - u)).collect()),
        ),
    ];
    for (look, x) in cases {
        let (_, _, want) = grid_rgba_mapped(&x, cols, look.signed);
        let (_, _, got) = render_look(&m.data, shape, cols, look);
        let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 1, "{look:?}: max channel difference {worst}");
    }
}

/// Several views side by side (`views` of a run): each panel drawn into its own viewport from
/// column `left`, the pixels of the CPU presenter's grid of that view, the gap between them black.
#[test]
fn present_shader_draws_views_side_by_side() {
    let shape = [3, 1, 6, 5];
    let count: usize = shape.iter().product();
    let m = scaled(randn(&[2 * shape[0], 1, 6, 5], 9), 2.0);
    let cols = grid_cols(shape[0]);
    let (gw, gap) = (cols * shape[3], 3);
    let looks = [
        Look::default(),
        Look { signed: Some(SIGNED_SCALE), offset: count, minus: None },
        Look { signed: Some(SIGNED_SCALE), offset: 0, minus: Some((count, 1.5)) },
    ];
    let panels: Vec<(Look, u32)> = looks.iter().enumerate().map(|(k, &l)| (l, (k * (gw + gap)) as u32)).collect();
    let width = 3 * gw + 2 * gap;
    let (w, h, got) = render_panels(&m.data, shape, cols, &panels, width);
    let alone = |look: Look| render_look(&m.data, shape, cols, look).2;
    for (k, &(look, left)) in panels.iter().enumerate() {
        let want = alone(look);
        for y in 0..h {
            let row = &got[(y * w + left as usize) * 4..][..gw * 4];
            assert_eq!(row, &want[y * gw * 4..][..gw * 4], "panel {k}, row {y}");
            if k + 1 < panels.len() {
                let gap_px = &got[(y * w + left as usize + gw) * 4..][..gap * 4];
                assert!(gap_px.chunks(4).all(|p| p[..3] == [0, 0, 0]), "the gap after panel {k} is black");
            }
        }
    }
}
