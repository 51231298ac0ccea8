// Models that must compile, and their constants usable in const context.
percept::network! {
    pub model Xor {
        input [2]
        dense(8)
        tanh
        dense(1)
        sigmoid
        loss binary_cross_entropy
    }
}

percept::network! {
    model Features {
        input x: [3, 32, 32]
        stem: conv2d(8, kernel: [3, 5], stride: [1, 2], padding: [1, 2], bias: false)
        leaky_relu(slope: 0.01); elu(alpha: 2); batchnorm(eps: 1e-3)
        add(stem); avgpool(2, stride: 1); global_avgpool
        maxout(4, pieces: 3); dropout(p: 0.25); softmax
    }
}

const _: () = assert!(Xor::PARAMETERS == 33);
const _: [usize; 1] = Features::OUTPUT_SHAPE;

fn main() {
    assert_eq!(Features::INPUT_SHAPE, [3, 32, 32]);
}
