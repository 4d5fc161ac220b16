#!/usr/bin/env bash
# The integer-dot step in several processes: one x-block buffer shared by every matmul (the
# default after this experiment) against one per matmul (HEADROOM_Q8_OWN_XQ=1), with the
# SM clock and power sampled every 100 ms during each run. Run with a build between
# 9dae6e7 and f011e6a that had the HEADROOM_Q8_OWN_XQ switch; f011e6a removed it (the
# experiment showed no difference), so on later commits both variants share the buffer.
set -e
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .bin/headroom-q8.xz > /tmp/hr; chmod +x /tmp/hr
for v in shared own shared own shared f16; do
  env=(HEADROOM_Q8_DOT=1); args=(--quant q4_0)
  [ "$v" = own ] && env+=(HEADROOM_Q8_OWN_XQ=1)
  [ "$v" = f16 ] && args=()
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 > /tmp/clk.txt &
  smi=$!
  echo "== $v: $(env "${env[@]}" /tmp/hr bench decode-step --synthetic llama2-7b --kv-heads 8 --batch 1 --context 4096 --runs 40 --probe-gib 0.25 "${args[@]}" 2>&1 | grep -E '^ +8 ' | awk '{print $4 " ms"}')"
  kill $smi; wait $smi 2>/dev/null || true
  sort -t, -k1 -n /tmp/clk.txt | awk -F, 'NR==1{mn=$1} {mx=$1; p=($2>p)?$2:p} END{print "   SM clock MHz min " mn " max " mx ", power max " p " W"}'
  awk -F, '$1>1000' /tmp/clk.txt | sort | uniq -c | sort -rn | head -3
done
