# SPDX-License-Identifier: GPL-2.0
#
# Ratios per workload from report.py's BASE.dat:
#   gnuplot -e "datafile='X.dat'; outfile='X.svg'; title='...'" ratios.gp
# Bars: kcmux/in-tree kcm.ko and kcmux/raw TCP (bytes/s), and the
# built-in framing over in-tree where measured; log scale, so that 0.01
# and 2.0 both stay readable.  Lines at 1.0 (parity) and 0.8.

if (!exists("title")) title = "kcmux benchmark"
set terminal svg size 1200,560 dynamic font "sans,11" background rgb "white"
set output outfile
set title title
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.005:4]
set ytics (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1, 1.3, 2, 4)
set ylabel "ratio (median over rounds)"
set grid ytics
set xtics rotate by -40 left noenhanced
set key outside top center horizontal noenhanced
set datafile missing "NaN"
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black"
set arrow from graph 0, first 0.8 to graph 1, first 0.8 nohead dt 2 lc rgb "gray40"
plot datafile using 2:xtic(1) title "kcmux / in-tree kcm.ko (msgs/s)" lc rgb "#1f77b4", \
     '' using 4 title "kcmux framing / in-tree (msgs/s)" lc rgb "#2ca02c", \
     '' using 3 title "kcmux / raw TCP (bytes/s)" lc rgb "#ff7f0e"
