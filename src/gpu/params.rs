//! Typed kernel parameters: each shader's `Params` uniform as a `#[repr(C)]` Pod struct, declared
//! beside the op's dispatch (`gpu/ops/<op>.rs`) with `kernel_params!`. `tests/shaders.rs` compares every struct's size
//! and field offsets with naga's reflection of the WGSL struct, so the two cannot drift apart.

/// A uniform parameter block of one shader.
pub trait KernelParams: bytemuck::Pod {
    /// The shader file (without `.wgsl`) whose `Params` struct this mirrors.
    const SHADER: &'static str;
    /// (field name, byte offset), in declaration order.
    fn fields() -> Vec<(&'static str, usize)>;
}

/// One struct's layout, for the reflection test.
#[derive(Debug)]
pub struct ParamLayout {
    pub shader: &'static str,
    pub rust_name: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
}

pub fn layout<P: KernelParams>() -> ParamLayout {
    ParamLayout { shader: P::SHADER, rust_name: std::any::type_name::<P>(), size: std::mem::size_of::<P>(), fields: P::fields() }
}

/// Declares a kernel's parameter struct (fields named exactly as in the WGSL `Params`).
#[macro_export]
macro_rules! kernel_params {
    ($(#[$meta:meta])* $name:ident for $shader:literal { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $(pub $field: $ty),* }

        impl $crate::gpu::params::KernelParams for $name {
            const SHADER: &'static str = $shader;
            fn fields() -> Vec<(&'static str, usize)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field))),*]
            }
        }
    };
}
