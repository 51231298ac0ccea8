percept::network! {
    model Bad {
        input [784]
        a: dense(10)
        a: relu
    }
}

fn main() {}
