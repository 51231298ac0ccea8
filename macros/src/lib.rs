//! `network!`: the model language inside Rust, checked at compile time.
//!
//! ```ignore
//! percept::network! {
//!     pub model Lenet5 {
//!         input [1, 28, 28]
//!         conv2d(6, kernel: 5, padding: 2)
//!         relu
//!         // ...
//!         loss softmax_cross_entropy
//!     }
//! }
//! ```
//!
//! The macro turns the Rust tokens into the compiler's own tokens and runs the compiler's
//! grammar and checker on them — the very code `percept check` runs on `.nn` files — so
//! a shape error is a compile error at the offending token with the same message. It
//! emits a type with the shapes as constants and code that builds the AST directly (no
//! text is parsed at run time); everything it names is under `::percept::`.

mod emit;
mod tokens;

use proc_macro::TokenStream;

#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    match expand(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let (vis, table) = tokens::read(input)?;
    let model = percept_compiler::grammar::parse_model(&table.tokens, table.eof()).map_err(|d| table.error(&d))?;
    let spec = percept_compiler::check(&model).map_err(|d| table.error(&d))?;
    emit::emit(&vis, &table, &model, &spec)
}
