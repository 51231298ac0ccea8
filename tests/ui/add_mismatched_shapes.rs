percept::network! {
    model Bad {
        input [1, 28, 28]
        stem: conv2d(4, kernel: 3)
        conv2d(8, kernel: 3)
        add(stem)
    }
}

fn main() {}
