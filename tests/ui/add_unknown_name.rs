percept::network! {
    model Bad {
        input [1, 28, 28]
        stem: conv2d(4, kernel: 3, padding: same)
        relu
        add(stm)
    }
}

fn main() {}
