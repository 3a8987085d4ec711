module khosim

go 1.26
