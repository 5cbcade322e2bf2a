// Sign-magnitude weight MAC of a weight-stationary PE: sum = p + w * a, with a signed int8
// weight, an unsigned 8-bit activation code and a P_BITS-bit partial sum (the PE contract).
//
// The weight register holds sign and magnitude (|w| up to 128 needs all 8 bits): the
// conversion from the two's-complement code happens once, when the weight is loaded, and holds
// still while a fold streams. The multiplier is unsigned (|w| x a, 16 bits: Yosys's array
// multiplier, as in the default PE); the product is added to the two's-complement partial sum,
// or subtracted for a negative weight (inverted, with the +1 as the adder's carry-in). So a
// small negative weight makes a small product, not a long run of sign bits.
module pe_mac_sm #(
    parameter W_BITS = 8,
    parameter A_BITS = 8,
    parameter P_BITS = 22
) (
    input  wire signed [W_BITS-1:0] w,
    input  wire        [A_BITS-1:0] a,
    input  wire signed [P_BITS-1:0] p,
    output wire signed [P_BITS-1:0] sum
);
    wire sign = w[W_BITS-1];
    wire [W_BITS-1:0] magnitude = sign ? -w : w;          // 128 for -128: 8 bits unsigned
    wire [W_BITS+A_BITS-1:0] product = magnitude * a;     // unsigned x unsigned
    wire [P_BITS-1:0] extended = {{(P_BITS - W_BITS - A_BITS){1'b0}}, product};
    wire [P_BITS-1:0] operand = extended ^ {P_BITS{sign}};
    assign sum = p + operand + {{(P_BITS - 1){1'b0}}, sign};
endmodule
