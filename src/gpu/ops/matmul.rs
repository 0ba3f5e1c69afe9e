//! The matmul yardstick (`shaders/matmul.wgsl`): plain GEMMs that `ddim bench` times to put the
//! conv kernels' rate beside the best matmul this adapter runs. Not part of the U-Net.

use crate::kernel_params;

kernel_params!(MatmulParams for "matmul" { m: u32, n: u32, k: u32, _p: u32 });
