//! Operator families of the CPU provider, one module each. Every module
//! registers its own kernels; [`register_all`] lists the families.

pub mod activation;
pub mod cast;
pub mod compare;
pub mod constant;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod generate;
pub mod layout;
pub mod matmul;
pub mod normalization;
pub mod pad;
pub mod pool;
pub mod rearrange;
pub mod reduce;
pub mod slice;
pub mod softmax;
pub mod unary;
pub mod window;

use oxrt_core::KernelRegistry;

/// Registers every operator family.
pub fn register_all(reg: &mut KernelRegistry) {
    activation::register(reg);
    cast::register(reg);
    compare::register(reg);
    constant::register(reg);
    conv::register(reg);
    elementwise::register(reg);
    gather::register(reg);
    generate::register(reg);
    layout::register(reg);
    matmul::register(reg);
    normalization::register(reg);
    pad::register(reg);
    pool::register(reg);
    rearrange::register(reg);
    reduce::register(reg);
    slice::register(reg);
    softmax::register(reg);
    unary::register(reg);
}
