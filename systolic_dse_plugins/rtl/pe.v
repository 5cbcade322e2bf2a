// Processing element of a weight-stationary systolic array (systolic-dse default PE).
//
// The stationary weight sits in w_reg (loaded while w_load is high). Each cycle an unsigned
// activation a_in arrives from the left and is passed on through a_reg; a partial sum p_in
// arrives from above; p_in + w_reg * a_in is registered into p_reg and leaves below.
// The multiplier is Yosys's default mapping of `*`: an unsigned-array / carry-save multiplier
// (no Booth recoding), and the adder a ripple-carry adder; which weights are cheap depends on
// this choice (see docs/energy-model.md).
module pe #(
    parameter W_BITS = 8,    // signed weight
    parameter A_BITS = 8,    // unsigned activation code
    parameter P_BITS = 22    // partial sum: W_BITS + A_BITS + ceil(log2(rows))
) (
    input  wire                     clk,
    input  wire                     w_load,
    input  wire signed [W_BITS-1:0] w_in,
    input  wire        [A_BITS-1:0] a_in,
    input  wire signed [P_BITS-1:0] p_in,
    output reg         [A_BITS-1:0] a_out,
    output reg  signed [P_BITS-1:0] p_out
);
    reg signed [W_BITS-1:0] w_reg;
    wire signed [P_BITS-1:0] sum;

    pe_mac #(.W_BITS(W_BITS), .A_BITS(A_BITS), .P_BITS(P_BITS)) mac (
        .w(w_reg), .a(a_in), .p(p_in), .sum(sum)
    );

    always @(posedge clk) begin
        if (w_load) w_reg <= w_in;
        a_out <= a_in;
        p_out <= sum;
    end
endmodule

// The combinational MAC of the PE: what switches when the activation and partial sum change.
module pe_mac #(
    parameter W_BITS = 8,
    parameter A_BITS = 8,
    parameter P_BITS = 22
) (
    input  wire signed [W_BITS-1:0] w,
    input  wire        [A_BITS-1:0] a,
    input  wire signed [P_BITS-1:0] p,
    output wire signed [P_BITS-1:0] sum
);
    // Zero-extend the unsigned activation so the product is signed x non-negative.
    wire signed [A_BITS:0] a_signed = {1'b0, a};
    wire signed [W_BITS+A_BITS:0] product = w * a_signed;
    assign sum = p + product;
endmodule
