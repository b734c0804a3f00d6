//! Operator families of the CPU provider, one module each. Every module
//! registers its own kernels; [`register_all`] lists the families.

pub mod activation;
pub mod cast;
pub mod compare;
pub mod constant;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod layout;
pub mod matmul;
pub mod normalization;
pub mod pool;
pub mod reduce;
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
    layout::register(reg);
    matmul::register(reg);
    normalization::register(reg);
    pool::register(reg);
    reduce::register(reg);
    softmax::register(reg);
    unary::register(reg);
}
