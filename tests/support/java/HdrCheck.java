// Independent check of hpcbench's HdrHistogram files with the reference Java implementation.
//   read FILE.hlog   one line per interval: tag count p50 p99 (values in ns)
//   write            a histogram of the values 1000, 2000, ..., 1000000 (ns), base64 V2 compressed
import org.HdrHistogram.EncodableHistogram;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogReader;

import java.io.File;
import java.nio.ByteBuffer;
import java.util.Base64;

public class HdrCheck {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("read")) {
            HistogramLogReader reader = new HistogramLogReader(new File(args[1]));
            EncodableHistogram interval;
            while ((interval = reader.nextIntervalHistogram()) != null) {
                Histogram histogram = (Histogram) interval;
                System.out.println(histogram.getTag() + " " + histogram.getTotalCount() + " "
                        + histogram.getValueAtPercentile(50.0) + " "
                        + histogram.getValueAtPercentile(99.0));
            }
        } else {
            Histogram histogram = new Histogram(1000L, 3_600_000_000_000L, 3);
            for (long value = 1000; value <= 1_000_000; value += 1000) {
                histogram.recordValue(value);
            }
            ByteBuffer buffer = ByteBuffer.allocate(histogram.getNeededByteBufferCapacity());
            int length = histogram.encodeIntoCompressedByteBuffer(buffer);
            byte[] bytes = new byte[length];
            buffer.rewind();
            buffer.get(bytes);
            System.out.println(Base64.getEncoder().encodeToString(bytes));
        }
    }
}
