//! Every class of user error: its message, and the line:column it points at.

use percept_compiler::{parse_and_check, SourceFile};

/// Check `text`, expect an error at `at` ("line:col") whose message contains `msg` and,
/// if given, whose help contains `help`.
fn error(text: &str, at: &str, msg: &str, help: Option<&str>) {
    let src = SourceFile::new("test.nn", text);
    let d = parse_and_check(&src).expect_err("this model must not check");
    let rendered = d.render(&src);
    let first = rendered.lines().next().unwrap();
    assert!(first.starts_with(&format!("test.nn:{at}: error: ")), "wrong position:\n{rendered}");
    assert!(d.message.contains(msg), "wrong message:\n{rendered}");
    if let Some(h) = help {
        assert!(d.help.as_deref().unwrap_or("").contains(h), "wrong help:\n{rendered}");
    }
    // The rendered diagnostic shows the source line and a caret under the statement.
    assert!(rendered.contains('^'), "no caret:\n{rendered}");
}

fn m(body: &str) -> String {
    format!("model m {{\n    input [1, 8, 8]\n{body}\n}}\n")
}

#[test]
fn lexical_and_syntax_errors() {
    error("model m { input [4] relu @ }", "1:26", "unexpected character `@`", None);
    error("model m { input [4] conv2d(1, kernel: 3x3) }", "1:39", "followed directly by a name", None);
    error("net m { input [4] }", "1:1", "expected `model`", Some("model NAME {"));
    error("model { input [4] }", "1:7", "expected the model's name", None);
    error("model m { input [4] dense(3", "1:28", "expected `,` or `)`", None);
    error("model m { input [4] dense(3) ", "1:30", "expected `}` to close the model", None);
    error("model m { input [4] dense(3) } extra", "1:32", "after the end of the model", None);
    error("model m { input [4] 42 }", "1:21", "expected a statement", None);
    error("model m { input [4] dense(units: ) }", "1:34", "expected a value", None);
    error("model m { input 4 dense(2) }", "1:17", "expected the input shape", None);
    error("model m { input [4] loss }", "1:26", "expected the loss's name", None);
}

#[test]
fn unknown_names_suggest_the_closest() {
    error(&m("    dens(10)"), "3:5", "unknown layer `dens`", Some("did you mean `dense`?"));
    error(&m("    conv2d(4, kernal: 3)"), "3:15", "`conv2d` has no argument `kernal`", Some("did you mean `kernel`?"));
    error(&m("    conv2d(4, kernel: 3, padding: sam)"), "3:35", "expects a padding", Some("did you mean `same`?"));
    error(&m("    flatten\n    loss softmax_crossentropy"), "4:10", "unknown loss", Some("softmax_cross_entropy"));
    error(&m("    flatten\n    softmax_cross_entropy"), "4:5", "unknown layer", Some("loss softmax_cross_entropy"));
}

#[test]
fn argument_errors() {
    error(&m("    conv2d(kernel: 3)"), "3:5", "`conv2d` needs the argument `filters`", Some("conv2d(filters, kernel"));
    error(&m("    flatten\n    dense"), "4:5", "`dense` needs the argument `units`", None);
    error(&m("    conv2d(4, kernel: 3, kernel: 5)"), "3:26", "argument `kernel` is given twice", None);
    error(&m("    flatten\n    dense(3, true, 5)"), "4:20", "`dense` takes 2 arguments", None);
    error(&m("    flatten\n    dense(bias: false, 3)"), "4:24", "a positional argument after a named one", None);
    error(&m("    conv2d(4, kernel: true)"), "3:23", "expects a positive integer or a list of two", None);
    error(&m("    flatten\n    dense(0)"), "4:11", "must be at least 1, found the integer 0", None);
    error(&m("    conv2d(4, kernel: 3, padding: -1)"), "3:35", "padding must not be negative", None);
    error(&m("    flatten\n    dense(2.5)"), "4:11", "expects a positive integer, found the number 2.5", None);
    error(&m("    dropout(p: 1.5)"), "3:16", "a probability", None);
    error(&m("    flatten\n    dense(100000000)"), "4:11", "at most", None);
    error(&m("    conv2d(4, kernel: [3, 3, 3])"), "3:23", "a list of two", None);
    error(&m("    leaky_relu(slope: fast)"), "3:23", "expects a number, found the name `fast`", None);
}

#[test]
fn shape_errors() {
    error(
        &m("    conv2d(16, kernel: 3)\n    dense(10)"),
        "4:5",
        "dense expects a flat input [features], found [16, 6, 6]",
        Some("add `flatten` before it"),
    );
    error(
        "model m {\n  input [784]\n  conv2d(4, kernel: 3)\n}",
        "3:3",
        "conv2d expects an image input [channels, height, width], found [784]",
        None,
    );
    error(
        &m("    conv2d(4, kernel: 11, padding: 1)"),
        "3:5",
        "kernel [11, 11] is larger than its padded input [10, 10]",
        None,
    );
    error(&m("    maxpool(9)"), "3:5", "window [9, 9] is larger than its input [8, 8]", None);
    error(&m("    conv2d(4, kernel: 4, padding: same)"), "3:5", "`padding: same` needs an odd kernel", None);
    error(
        "model m {\n  input [2, 3]\n  batchnorm\n}",
        "3:3",
        "batchnorm expects [features] or [channels, height, width]",
        None,
    );
    error("model m {\n  input [1, 4, 4]\n  softmax\n}", "3:3", "softmax expects a flat input", None);
    error(
        "model m {\n  input [1, 4, 4]\n  global_avgpool\n  global_avgpool\n}",
        "4:3",
        "global_avgpool expects an image input",
        None,
    );
    error("model m {\n  input [4]\n  dense(4)\n  dense(4)\n  dense(3)\n  maxout(4, pieces: 2)\n  flatten\n  dense(100000)\n  dense(100000)\n}", "9:3", "more than", None);
}

#[test]
fn name_errors() {
    error(
        &m("    a: conv2d(4, kernel: 3)\n    relu\n    add(b)"),
        "5:9",
        "no earlier statement is named `b`",
        Some("the names defined so far are: a"),
    );
    error(
        &m("    stem: conv2d(4, kernel: 3)\n    add(stm)"),
        "4:9",
        "no earlier statement is named `stm`",
        Some("did you mean `stem`?"),
    );
    error(&m("    relu\n    add(later)\n    later: relu"), "4:9", "no earlier statement is named `later`", None);
    error(
        &m("    a: conv2d(4, kernel: 3)\n    conv2d(8, kernel: 3)\n    add(a)"),
        "5:5",
        "add needs equal shapes: the previous output is [8, 4, 4] but `a` gives [4, 6, 6]",
        None,
    );
    error(
        &m("    a: conv2d(4, kernel: 3)\n    conv2d(8, kernel: 1, stride: 2)\n    concat(a)"),
        "5:5",
        "concat needs equal height and width: the previous output is [8, 3, 3] but `a` gives [4, 6, 6]",
        Some("joined along channels"),
    );
    error(
        &m("    a: conv2d(4, kernel: 3)\n    flatten\n    concat(a)"),
        "5:5",
        "concat needs flat outputs: the previous output is [144] but `a` gives [4, 6, 6]",
        None,
    );
    error(&m("    a: relu\n    concat(b)"), "4:12", "no earlier statement is named `b`", Some("a"));
    error(&m("    flatten\n    upsample(2)"), "4:5", "upsample expects an image input", None);
    error(&m("    upsample(0)"), "3:14", "`factor` must be at least 1", None);
    error(
        &m("    upsample(2, mode: bilinaer)"),
        "3:23",
        "`mode` must be one of nearest, bilinear, found `bilinaer`",
        Some("did you mean `bilinear`?"),
    );
    error(
        &m("    upsample(2, mode: 3)"),
        "3:23",
        "`upsample`'s argument `mode` expects a word, found the integer 3",
        None,
    );
    error(
        &m("    conv2d(4, kernel: 3)\n    conv2d(6, kernel: 3, groups: 3)"),
        "4:5",
        "4 input channels do not split into 3 groups",
        Some("groups must divide"),
    );
    error(
        &m("    conv2d(5, kernel: 3, groups: 1)\n    conv2d(4, kernel: 1, groups: 5)"),
        "4:5",
        "4 filters do not split into 5 groups",
        None,
    );
    error(
        &m("    conv2d(4, kernel: 3, padding: same, dilation: [1, 2], groups: 0)"),
        "3:67",
        "`groups` must be at least 1",
        None,
    );
    error(
        &m("    conv2d(4, kernel: 2, padding: same, dilation: 3)"),
        "3:5",
        "needs an odd dilated kernel extent",
        None,
    );
    error(
        &m("    conv2d(4, kernel: 3, dilation: 4)"),
        "3:5",
        "kernel [3, 3] (dilated to [9, 9]) is larger than its padded input",
        None,
    );
    error(
        &m("    conv_transpose2d(4, kernel: 3, stride: 2, output_padding: 2)"),
        "3:5",
        "output_padding [2, 2] must be smaller than its stride [2, 2]",
        None,
    );
    error(
        &m("    maxpool(2, padding: 2)"),
        "3:5",
        "maxpool's padding [2, 2] is more than half its window [2, 2]",
        Some("padding ≤ size / 2"),
    );
    error(
        &m("    avgpool(3, stride: 1, padding: same)"),
        "3:36",
        "`padding` must be an integer or `[rows, cols]`",
        None,
    );
    error(&m("    avgpool(3, count_include_pad: 1)"), "3:35", "`count_include_pad`", None);
    error(&m("    conv_transpose2d(4, kernel: 1, padding: 4)"), "3:5", "padding [4, 4] removes its whole output", None);
    error(
        &m("    conv_transpose2d(4, kernel: 3, padding: same)"),
        "3:45",
        "`padding` must be an integer or `[rows, cols]`",
        None,
    );
    error(
        &m("    a: relu\n    a: relu"),
        "4:5",
        "the name `a` is already used by an earlier statement",
        Some("rename one of them"),
    );
    error("model m {\n  input x: [4]\n  x: relu\n}", "3:3", "the name `x` is already used", None);
    error(&m("    0: relu"), "3:5", "expected a statement", None);
}

/// `from: NAME` on any layer: its name must exist already, be a name, be given once; and
/// every statement's output but the last must be read by someone.
#[test]
fn from_errors() {
    error(&m("    a: relu\n    relu(from: b)\n    add(a)"), "4:16", "no earlier statement is named `b`", Some("a"));
    error(&m("    relu(from: later)\n    later: relu"), "3:16", "no earlier statement is named `later`", None);
    error(&m("    a: relu\n    relu(from: 3)"), "4:16", "`from` takes the name of an earlier statement", None);
    error(&m("    a: relu\n    relu(from: a, from: a)"), "4:19", "`from` is given twice", None);
    // `b` reads `a`, but nothing reads `b`: the relu takes `a` again.
    error(
        &m("    a: conv2d(4, kernel: 3)\n    b: relu\n    relu(from: a)\n    add(a)"),
        "4:5",
        "the output of this statement is never used",
        Some("`from: b` or `add(b)`"),
    );
    // add with several names: each is looked up, typed and shape-checked.
    error(&m("    a: relu\n    b: relu\n    add(a, c)"), "5:12", "no earlier statement is named `c`", None);
    error(&m("    a: relu\n    add(a, 3)"), "4:12", "expects the names of earlier statements", None);
    error(
        &m("    a: relu\n    b: conv2d(1, kernel: 3)\n    relu(from: a)\n    add(a, b)"),
        "6:5",
        "the previous output is [1, 8, 8] but `b` gives [1, 6, 6]",
        None,
    );
    error(
        "model m {\n  input x: [4]\n  dense(3)\n  dense(2, from: x)\n  loss mse\n}",
        "3:3",
        "the output of this statement is never used",
        Some("name it"),
    );
}

#[test]
fn structure_errors() {
    error("model m {\n  dense(4)\n}", "1:7", "has no `input` statement", Some("input [1, 28, 28]"));
    error("model m {\n  relu\n  input [4]\n}", "3:3", "`input` must be the first statement", None);
    error("model m {\n  input [4]\n  input [4]\n}", "3:3", "exactly one `input`", None);
    error(
        "model m {\n  input [4]\n  dense(2)\n  loss mse\n  relu\n}",
        "5:3",
        "nothing may follow the `loss` statement",
        None,
    );
    error("model m {\n  input [4]\n}", "1:7", "has no layers", None);
    error(
        "model m {\n  x: input [4]\n  relu\n}",
        "2:3",
        "the input is named after the keyword",
        Some("input x: [...]"),
    );
    error("model m {\n  input []\n  relu\n}", "2:9", "the input shape is empty", None);
    error("model m {\n  input [1, 0]\n  relu\n}", "2:13", "an input dimension must be", None);
}

#[test]
fn loss_errors() {
    error(
        "model m {\n  input [4]\n  dense(3)\n  softmax\n  loss softmax_cross_entropy\n}",
        "4:3",
        "applies softmax twice",
        None,
    );
    error("model m {\n  input [4]\n  dense(1)\n  loss binary_cross_entropy\n}", "4:3", "needs a final `sigmoid`", None);
    error("model m {\n  input [4]\n  dense(1)\n  loss softmax_cross_entropy\n}", "4:3", "at least 2 classes", None);
    error("model m {\n  input [4]\n  dense(2)\n  l: loss mse\n}", "4:3", "a loss cannot be named", None);
}
