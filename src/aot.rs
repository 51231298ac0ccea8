//! What `percept build` writes around the compiler's object file
//! (`percept_compiler::codegen::aot`): the C header and the static archive.

use percept_compiler::codegen::aot::Library;

/// A model name as a C identifier prefix: lower case, anything else `_`.
pub fn c_prefix(model: &str) -> String {
    let mut p: String =
        model.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()) {
        p.insert(0, '_');
    }
    p
}

/// What the header records besides the entry points.
pub struct HeaderInfo<'a> {
    pub model: &'a str,
    pub source: &'a str,
    pub batch: usize,
    pub input_shape: &'a [usize],
    pub output_size: usize,
    /// One value for every input, or one per channel.
    pub mean: &'a [f32],
    pub std: &'a [f32],
    pub classes: Option<&'a [String]>,
}

fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The C header: sizes, preprocessing and labels, the entry points, how to call them.
pub fn header(lib: &Library, h: &HeaderInfo) -> String {
    let p = c_prefix(h.model);
    let up = p.to_ascii_uppercase();
    let per: usize = h.input_shape.iter().product();
    let shape: Vec<String> = h.input_shape.iter().map(|d| d.to_string()).collect();
    let mut s = format!(
        "/* {p}.h: the model `{model}` ({source}) compiled ahead of time by `percept build`.\n\
         *\n\
         * {p}_forward computes what `percept run` computes for the same input tensor\n\
         * (values used as given, evaluation mode), {batch} sample(s) per call. Inputs are\n\
         * float32 in C,H,W order per sample; to prepare images as `percept eval` does, scale\n\
         * pixels to [0, 1], then x = (x - {up}_MEAN) / {up}_STD.\n\
         *\n\
         * Threads: {p}_forward uses a workspace inside the library, so one call at a time;\n\
         * {p}_forward_ws takes the caller's workspace ({p}_workspace_bytes() bytes, any\n\
         * alignment) and may run on several threads at once, one workspace each.\n\
         * Both return 0 on success and 2 if this CPU lacks a feature the code needs\n\
         * ({features}), checked with CPUID before anything else runs.\n\
         * Link: cc ... lib{p}.a   (no other library needed)\n\
         */\n\
         #ifndef {up}_H\n#define {up}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #define {up}_BATCH {batch}            /* samples per call */\n\
         #define {up}_INPUT_SIZE {per}     /* floats per sample, C,H,W order: [{shape}] */\n\
         #define {up}_OUTPUT_SIZE {out}      /* floats per sample */\n\
         {norm}",
        model = h.model,
        source = h.source,
        batch = h.batch,
        out = h.output_size,
        shape = shape.join(", "),
        norm = normalization(&up, h.mean, h.std),
        features = lib.features.join(", "),
    )
    // The continuation lines above lose their leading space.
    .replace("\n*", "\n *");
    match h.classes {
        Some(cs) => {
            s += &format!("#define {up}_NUM_CLASSES {}\n", cs.len());
            let names: Vec<String> = cs.iter().map(|c| c_string(c)).collect();
            s += &format!("#define {up}_CLASS_NAMES {{ {} }}\n", names.join(", "));
        }
        None => s += &format!("#define {up}_NUM_CLASSES 0  /* the weights record no class names */\n"),
    }
    s += &format!(
        "\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         /* input: {up}_BATCH * {up}_INPUT_SIZE floats; output: {up}_BATCH * {up}_OUTPUT_SIZE. */\n\
         int32_t {p}_forward(const float *input, float *output);\n\
         int32_t {p}_forward_ws(const float *input, float *output, void *workspace);\n\
         size_t {p}_workspace_bytes(void);\n\n\
         #ifdef __cplusplus\n}}\n#endif\n\n#endif /* {up}_H */\n"
    );
    s
}

/// A static archive (GNU `ar` format with its symbol index, which `ld` needs to link from
/// it) of `objects` (member name, bytes, the symbols it defines). Written here because
/// the `ar` crate writes no symbol index.
pub fn archive(objects: &[(String, Vec<u8>, Vec<String>)]) -> Vec<u8> {
    fn header(out: &mut Vec<u8>, name: &str, size: usize) {
        out.extend(format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 644).as_bytes());
    }
    let padded = |n: usize| n + n % 2;
    let symbols: usize = objects.iter().map(|o| o.2.len()).sum();
    let names: Vec<u8> = objects.iter().flat_map(|o| &o.2).flat_map(|s| s.bytes().chain([0])).collect();
    let index_len = 4 + 4 * symbols + names.len();
    let mut offsets = vec![];
    let mut at = 8 + 60 + padded(index_len);
    for (_, bytes, syms) in objects {
        offsets.extend(std::iter::repeat_n(at as u32, syms.len()));
        at += 60 + padded(bytes.len());
    }
    let mut out = b"!<arch>\n".to_vec();
    header(&mut out, "/", index_len);
    out.extend((symbols as u32).to_be_bytes());
    for o in offsets {
        out.extend(o.to_be_bytes());
    }
    out.extend(&names);
    if index_len % 2 == 1 {
        out.push(b'\n');
    }
    for (name, bytes, _) in objects {
        header(&mut out, &format!("{name}/"), bytes.len());
        out.extend(bytes);
        if bytes.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// The input normalization recorded in the weights: `X_MEAN` and `X_STD` as numbers when
/// one pair serves every input, else as arrays with one value per channel (x′ = (x −
/// X_MEAN[c]) / X_STD[c] for the values of channel c).
fn normalization(up: &str, mean: &[f32], std: &[f32]) -> String {
    let list = |v: &[f32]| v.iter().map(|x| format!("{x:?}f")).collect::<Vec<_>>().join(", ");
    match (mean, std) {
        ([m], [s]) => format!(
            "#define {up}_MEAN {m:?}f       /* input normalization recorded in the weights */\n#define {up}_STD {s:?}f\n"
        ),
        _ => format!(
            "/* input normalization recorded in the weights, per channel: (x - MEAN[c]) / STD[c] */\n\
             #define {up}_NORM_CHANNELS {}\n\
             static const float {up}_MEAN[{0}] = {{{}}};\n\
             static const float {up}_STD[{0}] = {{{}}};\n",
            mean.len(),
            list(mean),
            list(std)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::normalization;

    #[test]
    fn one_pair_is_two_numbers_and_per_channel_values_are_arrays() {
        assert_eq!(
            normalization("LENET5", &[0.1307], &[0.3081]),
            "#define LENET5_MEAN 0.1307f       /* input normalization recorded in the weights */\n\
             #define LENET5_STD 0.3081f\n"
        );
        let per = normalization("CIFAR", &[0.5, 0.25, 0.125], &[1.0, 2.0, 4.0]);
        assert!(per.contains("#define CIFAR_NORM_CHANNELS 3\n"), "{per}");
        assert!(per.contains("static const float CIFAR_MEAN[3] = {0.5f, 0.25f, 0.125f};\n"), "{per}");
        assert!(per.contains("static const float CIFAR_STD[3] = {1.0f, 2.0f, 4.0f};\n"), "{per}");
    }
}
