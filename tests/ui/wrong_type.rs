percept::network! {
    model Bad {
        input [1, 28, 28]
        conv2d(4, kernel: true)
    }
}

fn main() {}
