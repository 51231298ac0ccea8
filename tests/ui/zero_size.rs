percept::network! {
    model Bad {
        input [784]
        dense(0)
    }
}

fn main() {}
