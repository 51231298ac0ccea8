percept::network! {
    model Bad {
        dense(10)
        relu
    }
}

fn main() {}
