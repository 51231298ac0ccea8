percept::network! {
    model Bad {
        input [1, 28, 28]
        conv2d(6, kernel: 5)
        dense(10)
        loss softmax_cross_entropy
    }
}

fn main() {}
