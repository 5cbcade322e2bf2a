// Radix-4 Booth MAC of a weight-stationary PE: sum = p + w * a, with a signed int8 weight,
// an unsigned 8-bit activation code and a P_BITS-bit partial sum (the PE contract).
//
// The stationary weight is recoded into four radix-4 digits d_i in {-2, -1, 0, 1, 2}
// (w = sum d_i 4^i, from the bit triples w[2i+1], w[2i], w[2i-1] with w[-1] = 0). Each digit
// selects one partial product of the streamed activation: 0, a or 2a, inverted when d_i < 0;
// the +1 that completes the negation (two's complement) enters the sum at bit 2i. The recoding
// depends on the weight alone, so it holds still while a fold streams: only the selection,
// inversion and the adders switch. Four partial products instead of eight: which weights are
// cheap follows the digits (a digit 0 costs nothing), not the bits of w.
module pe_mac_booth #(
    parameter W_BITS = 8,
    parameter A_BITS = 8,
    parameter P_BITS = 22
) (
    input  wire signed [W_BITS-1:0] w,
    input  wire        [A_BITS-1:0] a,
    input  wire signed [P_BITS-1:0] p,
    output wire signed [P_BITS-1:0] sum
);
    wire [W_BITS:0] w_ext = {w, 1'b0};   // the implicit w[-1] = 0
    wire signed [P_BITS-1:0] terms [0:3];
    wire [3:0] neg;
    genvar i;
    generate
        for (i = 0; i < 4; i = i + 1) begin : digit
            wire [2:0] triple = w_ext[2 * i + 2 : 2 * i];
            wire one = triple[0] ^ triple[1];                       // |d| = 1
            wire two = (triple == 3'b011) | (triple == 3'b100);     // |d| = 2
            assign neg[i] = triple[2] & ~(triple[1] & triple[0]);   // d < 0 (111 is 0)
            wire [A_BITS:0] magnitude = one ? {1'b0, a} : (two ? {a, 1'b0} : {(A_BITS + 1){1'b0}});
            // sign-extended 0 | magnitude, inverted for a negative digit (one's complement)
            wire signed [A_BITS + 1:0] partial = neg[i] ? ~{1'b0, magnitude} : {1'b0, magnitude};
            assign terms[i] = partial <<< (2 * i);
        end
    endgenerate
    // the +1 of each negated partial product, at its digit's weight
    wire [P_BITS-1:0] corrections = {{(P_BITS - 7){1'b0}}, neg[3], 1'b0, neg[2], 1'b0, neg[1],
                                     1'b0, neg[0]};
    assign sum = p + terms[0] + terms[1] + terms[2] + terms[3] + $signed(corrections);
endmodule
