percept::network! {
    model Bad {
        input [1, 28, 28]
        flatten
        dens(10)
    }
}

fn main() {}
