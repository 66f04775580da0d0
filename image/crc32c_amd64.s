// CRC32C of long inputs by carry-less multiplication (VPCLMULQDQ on
// 512-bit registers), for the TAIL's checksum. See crc32c_amd64.go for
// the algorithm and the constants.

#include "textflag.h"

// func foldCRC32C(crc uint32, p *byte, n int, k *[12]uint64, out *[16]byte)
//
// n is a multiple of 256, at least 256. The 16 bytes stored at out have
// the CRC of p[:n] (with crc as the CRC before it) as their own.
TEXT ·foldCRC32C(SB), NOSPLIT, $0-40
	MOVL crc+0(FP), AX
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), DX
	MOVQ out+32(FP), DI

	// Four accumulators of 64 bytes: the first 256 bytes, with the
	// incoming CRC (inverted, as the register starts) folded into the
	// first four.
	NOTL AX
	VMOVD AX, X4
	VMOVDQU64 (SI), Z0
	VPXORQ Z4, Z0, Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	ADDQ $256, SI
	SUBQ $256, CX

	// Each 128-bit lane moves 2048 bits ahead onto the next block.
	VBROADCASTI32X4 (DX), Z8

loop:
	CMPQ CX, $256
	JB   reduce
	VPCLMULQDQ $0x00, Z8, Z0, Z4
	VPCLMULQDQ $0x11, Z8, Z0, Z0
	VPTERNLOGQ $0x96, (SI), Z4, Z0
	VPCLMULQDQ $0x00, Z8, Z1, Z5
	VPCLMULQDQ $0x11, Z8, Z1, Z1
	VPTERNLOGQ $0x96, 64(SI), Z5, Z1
	VPCLMULQDQ $0x00, Z8, Z2, Z6
	VPCLMULQDQ $0x11, Z8, Z2, Z2
	VPTERNLOGQ $0x96, 128(SI), Z6, Z2
	VPCLMULQDQ $0x00, Z8, Z3, Z7
	VPCLMULQDQ $0x11, Z8, Z3, Z3
	VPTERNLOGQ $0x96, 192(SI), Z7, Z3
	ADDQ $256, SI
	SUBQ $256, CX
	JMP  loop

reduce:
	// Fold the accumulators into the last one, 512 bits at a time.
	VBROADCASTI32X4 16(DX), Z8
	VPCLMULQDQ $0x00, Z8, Z0, Z4
	VPCLMULQDQ $0x11, Z8, Z0, Z5
	VPTERNLOGQ $0x96, Z5, Z4, Z1
	VPCLMULQDQ $0x00, Z8, Z1, Z4
	VPCLMULQDQ $0x11, Z8, Z1, Z5
	VPTERNLOGQ $0x96, Z5, Z4, Z2
	VPCLMULQDQ $0x00, Z8, Z2, Z4
	VPCLMULQDQ $0x11, Z8, Z2, Z5
	VPTERNLOGQ $0x96, Z5, Z4, Z3

	// Fold its lanes 0, 1 and 2 onto lane 3 (by 384, 256 and 128 bits;
	// lane 3's constants are zero) and add them up.
	VMOVDQU64 32(DX), Z8
	VPCLMULQDQ $0x00, Z8, Z3, Z4
	VPCLMULQDQ $0x11, Z8, Z3, Z5
	VPXORQ Z5, Z4, Z4
	VEXTRACTI32X4 $3, Z3, X6
	VEXTRACTI64X4 $1, Z4, Y7
	VPXOR Y7, Y4, Y4
	VEXTRACTI128 $1, Y4, X7
	VPXOR X7, X4, X4
	VPXOR X6, X4, X4
	VMOVDQU X4, (DI)
	VZEROUPPER
	RET
