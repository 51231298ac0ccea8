percept::network! {
    model Bad {
        input [1, 8, 8]
        conv2d(4, kernel: 11, padding: 1)
    }
}

fn main() {}
